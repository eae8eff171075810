"""Scoring one call: scorecard items, fatal items, dimension subtotals, taboo evidence and risk/empathy."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kefu.io import KefuError
from kefu.schemas import Transcript
from kefu.settings import get_settings
from models.classifier_base import CallClassifier, CallScores
from qa_inspect.estimate import RulesEstimator
from qa_inspect.rules import Context
from qa_inspect.scorecard import Scorecard

log = logging.getLogger(__name__)

SCORER_MODEL = "model"
SCORER_RULES = "rules"
# Agent turns whose classifier taboo probability reaches this are listed in `taboo` (source "model").
MODEL_TABOO_THRESHOLD = 0.5


def default_model_dir() -> Path:
    return get_settings().models_dir / "classifier"


def resolve_model_dir(model: str | Path | None, use_model: bool = True) -> Path | None:
    """The classifier directory to use: `model`, else $KEFU_HOME/models/classifier when it exists, else None."""
    if not use_model:
        return None
    if model:
        path = Path(model)
        if not path.is_dir():
            raise KefuError(f"--model {path}: no such model directory")
        return path
    default = default_model_dir()
    return default if default.is_dir() else None


def load_classifier(path: str | Path, threads: int | None = None) -> CallClassifier:
    """Load the trained call classifier (models.classifier) from a local directory."""
    try:
        from models.classifier import load_classifier as _load
    except ImportError as exc:
        raise KefuError(f"cannot load the classifier from {path}: models.classifier is not available ({exc})") from None
    try:
        try:
            return _load(path, threads=threads)
        except TypeError:  # a loader without a threads option
            return _load(path)
    except KefuError:
        raise
    except Exception as exc:
        raise KefuError(f"cannot load the classifier from {path}: {exc}") from exc


class Scorer:
    """Scores calls with a scorecard and, when given, a classifier (else rules-based estimates)."""

    def __init__(
        self,
        scorecard: Scorecard,
        classifier: CallClassifier | None = None,
        model_taboo_threshold: float = MODEL_TABOO_THRESHOLD,
    ) -> None:
        if not 0.0 <= model_taboo_threshold <= 1.0:
            raise ValueError(f"model_taboo_threshold must be in [0, 1], got {model_taboo_threshold}")
        self.scorecard = scorecard
        self.classifier = classifier
        self.model_taboo_threshold = model_taboo_threshold
        self.estimator = RulesEstimator(scorecard.resources)
        self.scorer_name = SCORER_MODEL if classifier is not None else SCORER_RULES
        self.scorecard_label = f"{scorecard.name} {scorecard.version}".strip()

    def predict(self, transcripts: Sequence[Transcript]) -> list[CallScores | Exception | None]:
        """Classifier scores per call (None without a classifier); a call that fails gets its exception."""
        if self.classifier is None or not transcripts:
            return [None] * len(transcripts)
        try:
            return list(self.classifier.predict_calls(transcripts))
        except Exception:  # isolate the call that breaks the batch
            out: list[CallScores | Exception | None] = []
            for t in transcripts:
                try:
                    out.append(self.classifier.predict_calls([t])[0])
                except Exception as exc:
                    out.append(exc)
            return out

    def score_batch(self, transcripts: Sequence[Transcript]) -> list[dict[str, Any]]:
        """Score calls; a call that cannot be scored gets {"call_id", "error"} in its place."""
        results = []
        for t, scores in zip(transcripts, self.predict(transcripts), strict=True):
            if isinstance(scores, Exception):
                results.append(error_line(t.call_id, f"classifier failed: {scores}"))
                continue
            try:
                results.append(self.score(t, scores))
            except Exception as exc:
                log.exception("call %s: scoring failed", t.call_id)
                results.append(error_line(t.call_id, f"scoring failed: {type(exc).__name__}: {exc}"))
        return results

    def score(self, transcript: Transcript, scores: CallScores | None = None) -> dict[str, Any]:
        sc = self.scorecard
        ctx = Context(transcript, sc.resources, scores)
        results = sc.evaluate(transcript, ctx)
        lost: dict[str, float] = dict.fromkeys(sc.dimensions, 0.0)
        deductions, rule_hits, fatal_items, review_items = [], [], [], []
        for r in results:
            if not r.hits:
                continue
            rule_hits.extend(h.to_dict() for h in r.hits)
            if r.item.needs_review:
                review_items.append(r.item.id)
            if r.item.fatal:
                fatal_items.append(r.item.id)
            if r.deduction > 0:
                lost[r.item.dimension] += r.deduction
            deductions.append(
                {
                    "item": r.item.id,
                    "name": r.item.name,
                    "dimension": r.item.dimension,
                    "points": r.deduction,
                    "hits": len(r.hits),
                }
            )
        dimensions = {}
        for key, dim in sc.dimensions.items():
            dimensions[key] = {"name": dim.name, "score": max(0.0, dim.points - lost[key]), "max": dim.points}
        total = 100.0 * sum(d["score"] for d in dimensions.values()) / sc.total_points
        fatal = bool(fatal_items)
        if fatal and sc.fatal_score is not None:
            total = min(total, sc.fatal_score)
        taboo = self._taboo(transcript, ctx, scores)
        if scores is not None:
            risk, empathy = float(scores.complaint_risk), float(scores.empathy)
        else:
            est = self.estimator.estimate(ctx)
            risk, empathy = est.complaint_risk, est.empathy
        out = transcript.passthrough()
        out.update(
            {
                "score": round(total, 1),
                "fatal": fatal,
                "fatal_items": fatal_items,
                "dimensions": dimensions,
                "deductions": deductions,
                "complaint_risk": round(min(1.0, max(0.0, risk)), 4),
                "empathy": round(min(1.0, max(0.0, empathy)), 4),
                "scorer": self.scorer_name,
                "taboo": taboo,
                "rule_hits": rule_hits,
                "needs_review": review_items,
            }
        )
        if self.classifier is not None:
            out["classifier"] = getattr(self.classifier, "name", type(self.classifier).__name__)
        if ctx.skipped:
            out["skipped_rules"] = sorted(ctx.skipped)
        out["scorecard"] = self.scorecard_label
        # review/review_reason stay last: the sampling pass rewrites this tail of the line.
        out.pop("review", None)
        out.pop("review_reason", None)
        out["review"] = False
        out["review_reason"] = []
        return out

    def _taboo(self, transcript: Transcript, ctx: Context, scores: CallScores | None) -> list[dict[str, Any]]:
        """Agent turns with a taboo: every uncancelled lexicon hit, and classifier-only turns."""
        out: list[dict[str, Any]] = []
        for i, turn in enumerate(transcript.turns):
            if turn.role != "agent":
                continue
            prob = None
            if scores is not None and i < len(scores.turns):
                prob = scores.turns[i].get("taboo")
            active = [m for m in ctx.taboo(i) if m.active]
            for m in active:
                entry = {"turn": i, **m.to_dict(), "source": "lexicon"}
                if prob is not None:
                    entry["model_prob"] = round(float(prob), 4)
                out.append(entry)
            if not active and prob is not None and prob >= self.model_taboo_threshold:
                out.append(
                    {
                        "turn": i,
                        "text": turn.text,
                        "span": [0, len(turn.text)],
                        "source": "model",
                        "prob": round(float(prob), 4),
                    }
                )
        return out


def error_line(call_id: Any, error: str, source: str | None = None) -> dict[str, Any]:
    """The output line of a call that cannot be scored."""
    out: dict[str, Any] = {"call_id": call_id, "error": error}
    if source:
        out["source"] = source
    out["review"] = False
    out["review_reason"] = []
    return out
