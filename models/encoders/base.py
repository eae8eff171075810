"""The encoder interface: texts in, L2-normalised float32 vectors out, saved as a Hugging Face–style directory."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from kefu.io import KefuError

# The key in config.json that names which kefu backend reads the directory.
BACKEND_KEY = "kefu_encoder"


class EncoderError(KefuError):
    """An encoder directory is missing, unreadable or of an unknown kind."""


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns texts into unit vectors whose inner product is their cosine similarity."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """An (n, dim) float32 array of L2-normalised rows (a zero text gives a zero row)."""
        ...

    def save(self, path: str | Path) -> None:
        """Write the encoder as a directory that `load_encoder(path)` reads back."""
        ...

    def describe(self) -> dict[str, Any]:
        """Name, kind and settings, recorded in index metadata."""
        ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return (x / norms).astype(np.float32, copy=False)


def read_config(path: Path) -> dict[str, Any]:
    config_file = path / "config.json"
    try:
        return json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise EncoderError(f"{path}: not an encoder directory (no config.json)") from exc
    except (OSError, ValueError) as exc:
        raise EncoderError(f"{config_file}: cannot read the encoder config: {exc}") from exc
