"""Encoder over any local Hugging Face checkpoint directory (AutoModel + AutoTokenizer, mean or CLS pooling)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.encoders.base import EncoderError, l2_normalize, read_config

log = logging.getLogger(__name__)

KIND = "hf"
POOLING_FILE = "kefu_pooling.json"
POOLINGS = ("mean", "cls")


def read_pooling(path: Path) -> dict[str, Any]:
    """Pooling settings: kefu_pooling.json, else a sentence-transformers 1_Pooling/config.json, else
    `kefu_pooling` in config.json, else mean pooling."""
    settings: dict[str, Any] = {"pooling": "mean", "max_length": 128}
    own = path / POOLING_FILE
    st = path / "1_Pooling" / "config.json"
    if own.exists():
        settings.update(json.loads(own.read_text(encoding="utf-8")))
    elif st.exists():
        data = json.loads(st.read_text(encoding="utf-8"))
        settings["pooling"] = "cls" if data.get("pooling_mode_cls_token") else "mean"
    else:
        config = read_config(path)
        if isinstance(config.get("kefu_pooling"), str):
            settings["pooling"] = config["kefu_pooling"]
        elif isinstance(config.get("kefu_pooling"), dict):
            settings.update(config["kefu_pooling"])
    if settings["pooling"] not in POOLINGS:
        raise EncoderError(f"{path}: pooling must be one of {', '.join(POOLINGS)}, got {settings['pooling']!r}")
    if int(settings["max_length"]) < 1:
        raise EncoderError(f"{path}: max_length must be >= 1, got {settings['max_length']}")
    return settings


class HFEncoder:
    """Sentence vectors from a transformer checkpoint on disk; nothing is downloaded."""

    def __init__(
        self, model: Any, tokenizer: Any, pooling: str = "mean", max_length: int = 128, name: str = "hf"
    ) -> None:
        if pooling not in POOLINGS:
            raise EncoderError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if max_length < 1:
            raise EncoderError(f"max_length must be >= 1, got {max_length}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        self.name = name
        self.dim = int(model.config.hidden_size)

    @classmethod
    def load(cls, path: str | Path) -> HFEncoder:
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        settings = read_pooling(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EncoderError(
                f"{path}: cannot load a Hugging Face model and tokenizer from this directory: {exc}"
            ) from exc
        return cls(model, tokenizer, settings["pooling"], int(settings["max_length"]), name=path.name)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not one string")
        out = np.zeros((len(texts), self.dim), np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                chunk = [t or " " for t in texts[start : start + batch_size]]
                batch = self.tokenizer(
                    chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                )
                hidden = self.model(**batch).last_hidden_state
                if self.pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out[start : start + len(chunk)] = pooled.float().numpy()
        return l2_normalize(out)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": KIND,
            "dim": self.dim,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "model_type": getattr(self.model.config, "model_type", ""),
        }

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        (path / POOLING_FILE).write_text(
            json.dumps({"pooling": self.pooling, "max_length": self.max_length}) + "\n", encoding="utf-8"
        )
