"""`--base-model`: start the multi-task classifier from any local Hugging Face BERT-style checkpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kefu.io import InputError

log = logging.getLogger(__name__)


def is_char_checkpoint(base: Path) -> bool:
    """True for a `kefu train pretrain` output (character vocabulary, read with CharTokenizer)."""
    cfg_path = Path(base) / "tokenizer_config.json"
    return cfg_path.exists() and json.loads(cfg_path.read_text(encoding="utf-8")).get("kefu_tokenizer") == "char"


def load_base(base: str | Path, **config_overrides: Any) -> tuple[Any, Any]:
    """(KefuBertClassifier with the checkpoint's encoder and fresh heads, its tokenizer adapter).

    Works for BertModel, BertForMaskedLM and BertForPreTraining checkpoints (a Chinese BERT, or a
    `kefu train pretrain` output); nothing is downloaded. `config_overrides` (e.g. ngram_vocab_size,
    ngram_dim) are set on the config before the weights load; parts the checkpoint lacks start fresh.
    """
    from models.classifier.char_transformer import CharTokenizer, HFTokenizerAdapter, KefuBertClassifier

    base = Path(base)
    if not (base / "config.json").exists():
        raise InputError(f"--base-model {base}: not a Hugging Face checkpoint folder (no config.json)")
    if is_char_checkpoint(base):
        tokenizer: Any = CharTokenizer.load(base)
    else:
        try:
            from transformers import AutoTokenizer

            tokenizer = HFTokenizerAdapter(AutoTokenizer.from_pretrained(str(base)))
        except (OSError, ValueError) as exc:
            raise InputError(f"--base-model {base}: no usable tokenizer files ({exc})") from exc
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(base))
        for key, value in config_overrides.items():
            setattr(config, key, value)
        model = KefuBertClassifier.from_pretrained(str(base), config=config)
    except (OSError, ValueError) as exc:
        raise InputError(f"--base-model {base}: cannot load its weights as a BERT encoder ({exc})") from exc
    log.info("fine-tuning %s (%s, hidden %d)", base, model.config.model_type, model.config.hidden_size)
    return model, tokenizer


def default_lr(base: str | Path) -> float:
    """Small for a real pretrained BERT; larger for our small char encoders."""
    return 3e-4 if is_char_checkpoint(Path(base)) else 5e-5
