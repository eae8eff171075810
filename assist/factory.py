"""Builds the engine from a knowledge-base dir and a model dir, falling back to lexicon signals when parts are absent.

Fallbacks (documented in docs/assist.md): no index → no suggestions until one appears (the reloader picks it
up); no classifier → complaint risk from the complaint_trigger phrases and taboo from the lexicon only.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from assist.engine import AssistEngine, EngineConfig, FeedbackSink
from assist.signals import LexiconTaboo, PhraseOpening, PhraseRisk
from kefu.io import KefuError
from models.classifier_base import CallClassifier

log = logging.getLogger(__name__)

SLOW_CLASSIFIER_MS = 20.0


class BackgroundGapLogger:
    """Writes knowledge gaps to DIR/gaps.jsonl (knowledge_base.gaps.log_gap) from a daemon thread, so a turn
    never waits on the disk. A full queue drops the gap with a warning."""

    def __init__(self, kb_dir: str | Path, size: int = 10_000) -> None:
        from knowledge_base.gaps import log_gap

        self.kb_dir = Path(kb_dir)
        self._log_gap = log_gap
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=size)
        self.dropped = 0
        threading.Thread(target=self._run, name="kefu-gaps", daemon=True).start()

    def __call__(self, text: str, *, call_id: str, best_id: str | None, best_score: float | None) -> None:
        try:
            self._queue.put_nowait((text, {"call_id": call_id, "best_score": best_score, "best_id": best_id,
                                           "source": "assist"}))
        except queue.Full:
            self.dropped += 1
            log.warning("knowledge-gap queue full: %d gaps dropped", self.dropped)

    def _run(self) -> None:
        while True:
            text, meta = self._queue.get()
            try:
                self._log_gap(self.kb_dir, text, **meta)
            except Exception:
                log.exception("could not log a knowledge gap to %s", self.kb_dir)
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        self._queue.join()


def load_classifier_dir(model_dir: str | Path | None) -> CallClassifier | None:
    """The classifier saved in `model_dir`, or None (lexicon-only signals) when there is none."""
    if model_dir is None:
        return None
    path = Path(model_dir)
    if not path.exists():
        log.warning("no classifier at %s: taboo from the lexicon and risk from phrases only", path)
        return None
    try:
        from models.classifier import load_classifier
    except ModuleNotFoundError:
        log.warning("models.classifier is not installed: lexicon-only signals")
        return None
    try:
        classifier = load_classifier(path)
    except KefuError:
        raise
    except Exception as exc:
        raise KefuError(f"{path}: cannot load the classifier ({type(exc).__name__}: {exc})") from None
    # Every turn waits for the classifier: say so when it is too slow for live use.
    classifier.predict_turns(["您好"], ["agent"])
    start = time.perf_counter()
    classifier.predict_turns(["你们再不来修我就打12398投诉"], ["customer"])
    ms = (time.perf_counter() - start) * 1000.0
    if ms > SLOW_CLASSIFIER_MS:
        log.warning("classifier %s takes %.0f ms per turn: too slow for live assist (export it to ONNX int8 with "
                    "`kefu train export`, use a TF-IDF model, or run with --no-model)", path, ms)
    return classifier


def build_engine(
    *,
    kb_dir: str | Path | None,
    model_dir: str | Path | None = None,
    config: EngineConfig | None = None,
    feedback: FeedbackSink | None = None,
    alerts: Any | None = None,
    log_gaps: bool = True,
) -> AssistEngine:
    """An engine with the bundled lexicons, the classifier (if any) and gap logging to the KB dir.

    The retriever starts empty: the service's reloader (or `load_retriever`) loads the index.
    """
    classifier = load_classifier_dir(model_dir)
    return AssistEngine(
        None,
        config=config,
        classifier=classifier,
        taboo=LexiconTaboo(),
        risk=PhraseRisk(),
        opening=PhraseOpening(),
        gap_logger=BackgroundGapLogger(kb_dir) if (kb_dir is not None and log_gaps) else None,
        feedback=feedback,
        alerts=alerts,
    )
