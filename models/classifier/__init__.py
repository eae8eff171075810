"""Call classifiers (taboo, empathy, complaint risk) behind the CallClassifier protocol, chosen by load_classifier."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from kefu.io import KefuError
from models.classifier_base import CallClassifier

log = logging.getLogger(__name__)

Runtime = Literal["auto", "onnx", "torch"]
RUNTIMES: tuple[str, ...] = ("auto", "onnx", "torch")


def load_classifier(path: str | Path, runtime: Runtime = "auto", threads: int | None = None) -> CallClassifier:
    """Load a saved classifier directory.

    Transformer models run through onnxruntime (int8) when `runtime` is auto or onnx and the exported
    file is there, else through torch; TF-IDF models ignore `runtime`.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    path = Path(path)
    meta_path = path / "kefu_classifier.json"
    if not meta_path.exists():
        raise KefuError(
            f"{path}: not a kefu classifier directory (no kefu_classifier.json); train one with `kefu train fit`"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    backend = meta.get("backend")
    if backend == "tfidf":
        from models.classifier.tfidf import TfidfClassifier

        return TfidfClassifier.load(path)
    if backend not in ("char_transformer", "hf_finetune"):
        raise KefuError(f"{meta_path}: unknown backend {backend!r} (expected char_transformer, hf_finetune or tfidf)")
    from models.classifier.onnx_runtime import INT8_FILE, ONNX_DIR, OnnxClassifier, onnxruntime_available

    has_onnx = (path / ONNX_DIR / INT8_FILE).exists() and onnxruntime_available()
    if runtime == "onnx" and not has_onnx:
        raise KefuError(f"{path}: no ONNX export or onnxruntime missing; run `kefu train export --model {path}`")
    if runtime != "torch" and has_onnx:
        return OnnxClassifier(path, quantized=True, threads=threads)
    from models.classifier.char_transformer import TransformerClassifier

    return TransformerClassifier.load(path)


__all__ = ["RUNTIMES", "load_classifier"]
