"""Pick the encoder backend for a directory from its config.json, and find the default encoder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from models.encoders.base import BACKEND_KEY, Encoder, EncoderError, read_config

DEFAULT_NAME = "kb-encoder"
ENCODER_ENV = "KEFU_ENCODER"
BUNDLED = Path(__file__).resolve().parents[1] / "data" / DEFAULT_NAME


def default_encoder_path() -> Path | None:
    """$KEFU_ENCODER, else $KEFU_HOME/models/kb-encoder, else the copy bundled in models/data; None if none exists."""
    from kefu.settings import get_settings

    candidates = [os.environ.get(ENCODER_ENV), get_settings().models_dir / DEFAULT_NAME, BUNDLED]
    for c in candidates:
        if c and (Path(c) / "config.json").exists():
            return Path(c)
    return None


def load_encoder(path_or_name: str | Path) -> Encoder:
    """Load an encoder directory: kefu's built-in n-gram encoder or any local Hugging Face checkpoint.

    `builtin` or `default` names the default trained encoder (see default_encoder_path).
    """
    if str(path_or_name) in ("builtin", "default"):
        found = default_encoder_path()
        if found is None:
            raise EncoderError(
                f"no trained default encoder: set ${ENCODER_ENV}, or train one with "
                f"`python -m training.encoder -o $KEFU_HOME/models/{DEFAULT_NAME}`"
            )
        path_or_name = found
    path = Path(path_or_name)
    if not path.is_dir():
        raise EncoderError(f"{path}: encoder directory not found")
    config: dict[str, Any] = read_config(path)
    kind = config.get(BACKEND_KEY)
    if kind == "ngram":
        from models.encoders.builtin import NgramEncoder

        return NgramEncoder.load(path)
    if kind in (None, "hf") and "model_type" in config:
        from models.encoders.hf import HFEncoder

        return HFEncoder.load(path)
    raise EncoderError(f"{path}: unknown encoder kind {kind!r} (config.json has neither {BACKEND_KEY} nor model_type)")
