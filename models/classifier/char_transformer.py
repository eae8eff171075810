"""Small character-level BERT encoder with multi-task heads, saved as a Hugging Face–style directory."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel

from kefu.io import InputError
from models.classifier.call_text import load_call_text
from models.classifier.common import (
    CALL_HEAD,
    HEADS,
    META_FILE,
    ROLE_IDS,
    TURN_POOLINGS,
    Aggregator,
    Calibrator,
    TabooWindows,
    TurnModelMixin,
    default_aggregator,
)

log = logging.getLogger(__name__)

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
NGRAM_FILE = "ngram_vocab.txt"
NGRAM_PAD = "[PAD]"  # id 0 of the n-gram vocabulary: padding, never a real n-gram


def char_ngrams(text: str, n_max: int = 3) -> list[str]:
    """Every character 1- to n_max-gram of `text`, in order (repeats kept: the bag counts them)."""
    return [text[i : i + k] for k in range(1, n_max + 1) for i in range(len(text) - k + 1)]


CODE_BITS = 21  # every Unicode code point fits in 21 bits
MAX_PACKED_N = 3  # n-grams up to this length pack into one 64-bit integer


def _pack(gram: str) -> int:
    """One integer per n-gram of up to MAX_PACKED_N characters (distinct across lengths: no code point is 0)."""
    key = 0
    for ch in gram:
        key = (key << CODE_BITS) | ord(ch)
    return key


def build_ngram_vocab(texts: Iterable[str], n_max: int = 3, min_count: int = 3, max_size: int = 50_000
                      ) -> list[str]:
    """The n-gram vocabulary of the wide branch: [PAD] then the most frequent 1..n_max-grams (≥ min_count)."""
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(g for g in char_ngrams(t, n_max) if not any(c.isspace() for c in g))
    grams = [g for g, c in counts.most_common(max_size) if c >= min_count]
    return [NGRAM_PAD, *sorted(grams)]


def auto_pool(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, n, k) scores per position → (batch, k): each score weighted by its own softmax over the positions.

    A smooth maximum: one clearly positive position decides, and many mildly negative ones (procedure around a
    rude clause) cannot outvote it the way they do in a mean or a bag. Masked positions count for nothing; a row
    without any position scores 0.
    """
    keep = mask.unsqueeze(-1).to(torch.bool)
    weights = torch.softmax(scores.masked_fill(~keep, -1e4), dim=1) * keep.to(scores.dtype)
    return (weights * scores.masked_fill(~keep, 0.0)).sum(1)


def quiet_transformers() -> None:
    """No weight-loading/saving progress bars from transformers: kefu shows its own, silenced by --quiet."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


class CharTokenizer:
    """One token per character; vocab.txt is one token per line, readable by BertTokenizer."""

    def __init__(self, vocab: Sequence[str], ngram_vocab: Sequence[str] | None = None, ngram_max: int = 3) -> None:
        if list(vocab[: len(SPECIAL_TOKENS)]) != list(SPECIAL_TOKENS):
            raise ValueError(f"a vocabulary must start with {SPECIAL_TOKENS}, got {list(vocab[:5])}")
        self.vocab = list(vocab)
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = range(5)
        self.ngram_max = ngram_max
        self.ngram_vocab: list[str] = []
        self.ngram_index: dict[str, int] = {}
        self._ngram_keys: tuple[np.ndarray, np.ndarray] | None = None
        if ngram_vocab:
            self.set_ngrams(ngram_vocab, ngram_max)

    def set_ngrams(self, ngram_vocab: Sequence[str], ngram_max: int = 3) -> None:
        """Turn on the wide branch's input: encode_batch then also returns `ngram_ids`."""
        if not ngram_vocab or ngram_vocab[0] != NGRAM_PAD:
            raise ValueError(f"an n-gram vocabulary must start with {NGRAM_PAD}")
        if ngram_max < 1:
            raise ValueError(f"ngram_max must be at least 1, got {ngram_max}")
        self.ngram_vocab = list(ngram_vocab)
        self.ngram_index = {g: i for i, g in enumerate(self.ngram_vocab) if i}
        self.ngram_max = ngram_max
        self._ngram_keys = None
        if ngram_max <= MAX_PACKED_N and len(self.ngram_vocab) > 1:  # else (or with no n-gram at all) a dict lookup
            keys = np.array([_pack(g) for g in self.ngram_vocab[1:]], dtype=np.uint64)
            order = np.argsort(keys, kind="stable")
            self._ngram_keys = (keys[order], (order + 1).astype(np.int64))

    def ngram_batch(self, texts: Sequence[str]) -> np.ndarray:
        """(n, longest) ids of each text's known 1..ngram_max-grams, 0-padded (at least one column).

        Per text: the 1-grams in order, then the 2-grams, and so on (the order of `char_ngrams`).
        """
        if self._ngram_keys is None:
            get = self.ngram_index.get
            rows = [[i for g in char_ngrams(t, self.ngram_max) if (i := get(g))] for t in texts]
            out = np.zeros((len(texts), max(1, max((len(r) for r in rows), default=0))), dtype=np.int64)
            for i, r in enumerate(rows):
                out[i, : len(r)] = r
            return out
        return self._packed_ngram_batch(texts, *self._ngram_keys)

    def _packed_ngram_batch(self, texts: Sequence[str], keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
        # Vectorised lookup (a fifth of int8 inference time went to one dict lookup per n-gram): every n-gram of the
        # batch is packed into one integer (21 bits per character code) and found by binary search. Texts are
        # joined with a 0 code between them; an n-gram that touches a 0 belongs to no text and is dropped.
        if not texts:
            return np.zeros((0, 1), dtype=np.int64)
        codes = np.frombuffer("\0".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        owner = np.repeat(np.arange(len(texts)), lengths + 1)[: len(codes)]
        found_ids, found_owner = [], []
        packed = np.zeros(len(codes), dtype=np.uint64)
        valid = np.ones(len(codes), dtype=bool)
        for n in range(1, self.ngram_max + 1):
            m = len(codes) - n + 1
            if m <= 0:
                break
            packed = (packed[:m] << np.uint64(CODE_BITS)) | codes[n - 1 : n - 1 + m] if n > 1 else codes.copy()
            valid = valid[:m] & (codes[n - 1 : n - 1 + m] != 0)
            pos = np.searchsorted(keys, packed)
            pos[pos == len(keys)] = 0
            hit = valid & (keys[pos] == packed)
            found_ids.append(ids[pos[hit]])
            found_owner.append(owner[:m][hit])
        flat_ids = np.concatenate(found_ids) if found_ids else np.zeros(0, dtype=np.int64)
        flat_owner = np.concatenate(found_owner) if found_owner else np.zeros(0, dtype=np.int64)
        order = np.argsort(flat_owner, kind="stable")  # per text: 1-grams, then 2-grams, … (stable keeps n order)
        flat_ids, flat_owner = flat_ids[order], flat_owner[order]
        counts = np.bincount(flat_owner, minlength=len(texts))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        out = np.zeros((len(texts), max(1, int(counts.max(initial=0)))), dtype=np.int64)
        out[flat_owner, np.arange(len(flat_owner)) - starts[flat_owner]] = flat_ids
        return out

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 2, max_size: int = 6000) -> CharTokenizer:
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(t)
        chars = [c for c, n in counts.most_common(max_size) if n >= min_count and not c.isspace()]
        return cls([*SPECIAL_TOKENS, *sorted(chars)])

    def __len__(self) -> int:
        return len(self.vocab)

    def encode_batch(self, texts: Sequence[str], max_length: int, segment: Sequence[int] | None = None
                     ) -> dict[str, np.ndarray]:
        """input_ids / attention_mask / token_type_ids, padded to the longest text (≤ max_length)."""
        n = len(texts)
        length = min(max_length, max((len(t) for t in texts), default=0) + 2)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.int64)
        for i, t in enumerate(texts):
            toks = [self.cls_id, *(self.index.get(c, self.unk_id) for c in t[: length - 2]), self.sep_id]
            ids[i, : len(toks)] = toks
            mask[i, : len(toks)] = 1
        types = np.zeros((n, length), dtype=np.int64)
        if segment is not None:
            types[:] = np.asarray(segment, dtype=np.int64)[:, None] * mask
        out = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        if self.ngram_vocab:
            out["ngram_ids"] = self.ngram_batch([t[: length - 2] for t in texts])
        return out

    def save(self, directory: Path) -> None:
        (directory / "vocab.txt").write_text("\n".join(self.vocab) + "\n", encoding="utf-8")
        tok_cfg: dict[str, Any] = {"tokenizer_class": "BertTokenizer", "do_lower_case": True,
                                   "tokenize_chinese_chars": True, "kefu_tokenizer": "char", "model_max_length": 512}
        if self.ngram_vocab:
            # One n-gram per line; "[PAD]" first. N-grams never contain whitespace, so lines are unambiguous.
            (directory / NGRAM_FILE).write_text("\n".join(self.ngram_vocab) + "\n", encoding="utf-8")
            tok_cfg["kefu_ngram_file"] = NGRAM_FILE
            tok_cfg["kefu_ngram_max"] = self.ngram_max
        (directory / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> CharTokenizer:
        path = directory / "vocab.txt"
        if not path.exists():
            raise InputError(f"{path}: missing (a char-transformer model needs its vocabulary)")
        tok = cls([line for line in path.read_text(encoding="utf-8").split("\n") if line])
        cfg_path = directory / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else {}
        if cfg.get("kefu_ngram_file"):
            ng_path = directory / cfg["kefu_ngram_file"]
            if not ng_path.exists():
                raise InputError(f"{ng_path}: missing (this model's n-gram branch needs its n-gram vocabulary)")
            grams = ng_path.read_text(encoding="utf-8").split("\n")
            tok.set_ngrams([g for g in grams if g], int(cfg.get("kefu_ngram_max", 3)))
        return tok


class HFTokenizerAdapter:
    """The same encode_batch over a Hugging Face tokenizer (for --base-model checkpoints)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        self.vocab = tokenizer.get_vocab()

    def __len__(self) -> int:
        return len(self.tok)

    def encode_batch(self, texts: Sequence[str], max_length: int, segment: Sequence[int] | None = None
                     ) -> dict[str, np.ndarray]:
        enc = self.tok(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
        mask = enc["attention_mask"].astype(np.int64)
        types = np.zeros_like(mask)
        if segment is not None:
            types[:] = np.asarray(segment, dtype=np.int64)[:, None] * mask
        return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": mask, "token_type_ids": types}

    def save(self, directory: Path) -> None:
        self.tok.save_pretrained(str(directory))


class KefuBertClassifier(BertPreTrainedModel):
    """BertModel encoder (weights under `bert.`, so BertForMaskedLM can load them) + one linear head per output.

    Turn inputs carry the role in token_type_ids (0 agent, 1 customer); the call head reads a call's context.
    With `config.ngram_vocab_size` > 0 a fastText-style wide branch adds a bag of character 1–3-gram
    embeddings (ids from the tokenizer's n-gram vocabulary, input `ngram_ids`), concatenated to the
    pooled transformer vector before the heads.

    With `config.turn_pooling` "auto" the turn outputs are scored per position instead: every character's
    contextual vector and every n-gram get a score per output, each set auto-pooled (a smooth maximum) and the
    two summed, so a taboo clause keeps its weight however much procedure surrounds it. The call head always
    reads the pooled vector.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        ngram_vocab = int(getattr(config, "ngram_vocab_size", 0) or 0)
        ngram_dim = int(getattr(config, "ngram_dim", 0) or 0) if ngram_vocab else 0
        self.ngram = nn.Embedding(ngram_vocab, ngram_dim, padding_idx=0) if ngram_vocab else None
        width = config.hidden_size + ngram_dim
        self.turn_pooling = str(getattr(config, "turn_pooling", None) or "mean_cls")
        if self.turn_pooling not in TURN_POOLINGS:
            raise ValueError(f"turn_pooling must be one of {TURN_POOLINGS}, got {self.turn_pooling!r}")
        if self.turn_pooling == "auto":
            self.token_head = nn.Linear(config.hidden_size, len(HEADS))
            self.ngram_head = nn.Linear(ngram_dim, len(HEADS), bias=False) if self.ngram is not None else None
        else:
            self.turn_head = nn.Linear(width, len(HEADS))
        self.call_head = nn.Linear(width, 1)
        self.post_init()

    def bag(self, ngram_ids: torch.Tensor) -> torch.Tensor:
        """Sum of the n-gram embeddings over sqrt(count) (like an L2-normalised term-frequency vector)."""
        assert self.ngram is not None
        drop = float(getattr(self.config, "ngram_dropout", 0.0) or 0.0)
        if self.training and drop > 0:
            # N-gram dropout: whole n-grams vanish, so no single pattern-specific n-gram carries a label.
            ngram_ids = ngram_ids * (torch.rand(ngram_ids.shape, device=ngram_ids.device) >= drop)
        vec = self.ngram(ngram_ids)  # padding id 0 embeds to zeros
        count = (ngram_ids > 0).sum(1, keepdim=True).to(vec.dtype)
        return vec.sum(1) / count.clamp(min=1.0).sqrt()

    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled vector, hidden states per position)."""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
        # Mean over real tokens plus the [CLS] vector: mean pooling learns faster from scratch.
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.dropout(mean + hidden[:, 0]), hidden

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                ngram_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, 4) logits: taboo, empathy, risk, call_risk."""
        h, hidden = self._encode(input_ids, attention_mask, token_type_ids)
        if self.ngram is not None:
            if ngram_ids is None:
                raise ValueError("this model has an n-gram branch: pass ngram_ids (CharTokenizer.encode_batch does)")
            h = torch.cat([h, self.dropout(self.bag(ngram_ids))], dim=-1)
        if self.turn_pooling != "auto":
            turn = self.turn_head(h)
        else:
            turn = auto_pool(self.token_head(self.dropout(hidden)), attention_mask)
            if self.ngram_head is not None and ngram_ids is not None:
                grams = self.ngram(ngram_ids)  # padding (id 0) embeds to zeros and is masked out
                turn = turn + auto_pool(self.ngram_head(self.dropout(grams)), ngram_ids > 0)
        return torch.cat([turn, self.call_head(h)], dim=-1)


def small_config(vocab_size: int, hidden: int = 128, layers: int = 2, heads: int = 4, max_len: int = 130,
                 ngram_vocab_size: int = 0, ngram_dim: int = 0, ngram_dropout: float = 0.0,
                 attention_dropout: float = 0.1, turn_pooling: str = "mean_cls",
                 hidden_dropout: float = 0.1) -> BertConfig:
    """The default from-scratch encoder: a few layers over characters (+ the n-gram branch when sized)."""
    if hidden % heads:
        raise ValueError(f"hidden size must be a multiple of the head count, got {hidden} and {heads}")
    if not 0.0 <= attention_dropout < 1.0:
        raise ValueError(f"attention dropout must be in [0, 1), got {attention_dropout}")
    if not 0.0 <= hidden_dropout < 1.0:
        raise ValueError(f"hidden dropout must be in [0, 1), got {hidden_dropout}")
    if turn_pooling not in TURN_POOLINGS:
        raise ValueError(f"turn pooling must be one of {', '.join(TURN_POOLINGS)}, got {turn_pooling!r}")
    return BertConfig(
        turn_pooling=turn_pooling,
        ngram_vocab_size=ngram_vocab_size,
        ngram_dim=ngram_dim,
        ngram_dropout=ngram_dropout,
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=max_len,
        type_vocab_size=2,
        hidden_dropout_prob=hidden_dropout,
        attention_probs_dropout_prob=attention_dropout,
        pad_token_id=0,
    )


class TransformerClassifier(TurnModelMixin):
    """CallClassifier over a KefuBertClassifier in torch (eager), with calibration and call aggregation."""

    def __init__(self, model: KefuBertClassifier, tokenizer: CharTokenizer | HFTokenizerAdapter,
                 meta: dict[str, Any], name: str = "char-transformer", batch_size: int = 128) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.name = name
        self.batch_size = batch_size
        self.max_len = int(meta.get("max_turn_length", 128))
        self.max_call_len = int(meta.get("max_call_length", 256))
        self.calibrator = Calibrator.from_meta(meta)
        self.taboo_windows = TabooWindows.from_meta(meta)
        self.aggregator = Aggregator.from_dict(meta["aggregator"]) if meta.get("aggregator") else default_aggregator()

    def _run(self, texts: Sequence[str], segments: Sequence[int], max_len: int) -> np.ndarray:
        out = []
        # Sorting by length keeps padding small inside each batch.
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for s in range(0, len(texts), self.batch_size):
                idx = order[s : s + self.batch_size]
                enc = self.tokenizer.encode_batch([texts[i] for i in idx], max_len, [segments[i] for i in idx])
                logits = self.model(**{k: torch.from_numpy(v) for k, v in enc.items()})
                out.append((idx, logits.float().numpy()))
        result = np.zeros((len(texts), len(HEADS) + 1), dtype=np.float64)
        for idx, logits in out:
            result[idx] = logits
        return result

    def _logits(self, texts: Sequence[str], roles: Sequence[str]) -> np.ndarray:
        return self._run(texts, [ROLE_IDS[r] for r in roles], self.max_len)[:, : len(HEADS)]

    def _call_logits(self, contexts: Sequence[str]) -> np.ndarray:
        return self._run(contexts, [1] * len(contexts), self.max_call_len)[:, len(HEADS)]

    def save(self, directory: str | Path, card: str | None = None) -> Path:
        from models.classifier.card import write_card

        quiet_transformers()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.config.kefu = {"backend": self.meta.get("backend", "char_transformer"), "heads": [*HEADS, CALL_HEAD]}
        self.model.save_pretrained(str(directory), safe_serialization=True)
        self.tokenizer.save(directory)
        (directory / META_FILE).write_text(json.dumps(self.meta, ensure_ascii=False, indent=1), encoding="utf-8")
        if self.call_text is not None:
            self.call_text.save(directory)
        write_card(directory, self.meta, card)
        return directory

    @classmethod
    def load(cls, directory: str | Path, batch_size: int = 128) -> TransformerClassifier:
        quiet_transformers()
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        model = KefuBertClassifier.from_pretrained(str(directory))
        tok_cfg_path = directory / "tokenizer_config.json"
        tok_cfg = json.loads(tok_cfg_path.read_text(encoding="utf-8")) if tok_cfg_path.exists() else {}
        if tok_cfg.get("kefu_tokenizer") == "char":
            tokenizer: CharTokenizer | HFTokenizerAdapter = CharTokenizer.load(directory)
        else:
            from transformers import AutoTokenizer

            tokenizer = HFTokenizerAdapter(AutoTokenizer.from_pretrained(str(directory)))
        name = "char-transformer" if meta.get("backend") == "char_transformer" else "bert-finetuned"
        clf = cls(model, tokenizer, meta, name=name, batch_size=batch_size)
        clf.call_text = load_call_text(directory)
        return clf
