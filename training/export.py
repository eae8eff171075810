"""Export a trained transformer classifier to ONNX (fp32 + dynamic int8) and check it agrees with torch."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kefu.io import KefuError
from training.datasets import read_turns

log = logging.getLogger(__name__)


def export_and_check(model_dir: str | Path, check_turns: str | Path | None = None, tolerance: float = 0.01,
                     limit: int | None = None) -> dict[str, Any]:
    """Export, then compare every calibrated probability of the onnx int8 model with torch eager.

    `check_turns` is a turns JSONL file (the test split by default); the report is written to
    onnx/agreement.json. Raises KefuError when any probability differs by more than `tolerance`.
    """
    from models.classifier.char_transformer import TransformerClassifier
    from models.classifier.onnx_runtime import OnnxClassifier, export

    model_dir = Path(model_dir)
    paths = export(model_dir)
    report: dict[str, Any] = {"files": {k: str(v) for k, v in paths.items()},
                              "size_mb": {k: round(v.stat().st_size / 1e6, 2) for k, v in paths.items()}}
    if check_turns is not None:
        turns = read_turns(check_turns)[:limit] if limit else read_turns(check_turns)
        texts, roles = [t.text for t in turns], [t.role for t in turns]
        torch_p = TransformerClassifier.load(model_dir).turn_probabilities(texts, roles)
        for name, quantized in (("fp32", False), ("int8", True)):
            onnx_p = OnnxClassifier(model_dir, quantized=quantized).turn_probabilities(texts, roles)
            diff = np.abs(onnx_p - torch_p)
            report[f"{name}_max_abs_diff"] = float(diff.max())
            report[f"{name}_mean_abs_diff"] = float(diff.mean())
        report["turns_checked"] = len(turns)
        report["tolerance"] = tolerance
    (model_dir / "onnx" / "agreement.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    if check_turns is not None and report["int8_max_abs_diff"] > tolerance:
        raise KefuError(
            f"onnx int8 differs from torch by up to {report['int8_max_abs_diff']:.4f} (> {tolerance}) on "
            f"{report['turns_checked']} turns; see {model_dir / 'onnx' / 'agreement.json'}"
        )
    return report
