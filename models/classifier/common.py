"""Shared pieces of every classifier backend: labels, text preparation, calibration and call aggregation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kefu.schemas import Transcript, normalize_role
from kefu.text import normalize
from models.classifier_base import TURN_LABELS, CallScores

if TYPE_CHECKING:
    from models.classifier.call_text import CallTextModel

# Output columns of every turn model, in this order; the call head reads a whole call's context.
HEADS: tuple[str, ...] = ("taboo", "empathy", "risk")
# How the transformer's turn outputs read a turn: one linear head over the pooled vector (mean + [CLS], n-gram
# bag), or a score per character and per n-gram, auto-pooled (char_transformer.auto_pool).
TURN_POOLINGS: tuple[str, ...] = ("mean_cls", "auto")
CALL_HEAD = "call_risk"
ROLE_IDS: dict[str, int] = {"agent": 0, "customer": 1}
META_FILE = "kefu_classifier.json"


def prepare(text: str) -> str:
    """Model input text: the project's matching normalisation (width, simplified, no punctuation or fillers)."""
    return normalize(text)


def check_roles(texts: Sequence[str], roles: Sequence[str]) -> list[str]:
    """Canonical roles, with a clear error for a length mismatch or an unknown role."""
    if len(texts) != len(roles):
        raise ValueError(f"texts and roles must have the same length, got {len(texts)} and {len(roles)}")
    out = []
    for i, r in enumerate(roles):
        role = normalize_role(r)
        if role is None:
            raise ValueError(f"roles[{i}] must be agent or customer, got {r!r}")
        out.append(role)
    return out


def call_context(turns: Sequence[tuple[str, str]], max_chars: int = 128) -> str:
    """The text the call head reads: customer turns joined, head and tail kept when too long."""
    text = "|".join(prepare(t) for r, t in turns if r == "customer")
    if len(text) <= max_chars:
        return text
    half = max_chars // 2
    return text[:half] + text[-half:]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def logit(p: float | np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [eps, 1 - eps]."""
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(q / (1 - q))


@dataclass(frozen=True)
class TabooWindows:
    """Taboo read in overlapping windows of a long agent turn as well as in the whole turn.

    A rude clause inside long procedure is diluted in the whole turn (docs/classifier.md, 2026-12-07); scored
    in a window of `size` characters (every `stride`), it is not. A window counts with its logit lowered by
    `discount` — a window lacks the turn's context, so it must be surer than the whole turn — and the turn's
    taboo probability is the largest of the whole turn and its discounted windows. Turns shorter than
    `min_chars`, or too short for two windows, are read whole.
    """

    size: int = 30
    stride: int = 15
    # Windows cost a model pass each. Starting at 60 characters kept the held-out dev numbers of starting at 50
    # (docs/classifier.md, 2026-12-07) and the throughput above 2,000 turns/s (windows at every length: ≈1,950).
    min_chars: int = 60
    discount: float = 1.5

    def __post_init__(self) -> None:
        if not 1 <= self.stride <= self.size:
            raise ValueError(f"window stride must be between 1 and the window size ({self.size}), got {self.stride}")
        if self.min_chars < 0 or self.discount < 0:
            raise ValueError(f"window min_chars and discount must be >= 0, got {self.min_chars} and {self.discount}")

    def of(self, text: str) -> list[str]:
        """The windows of `text`; [] when it is read whole."""
        if len(text) < self.min_chars or len(text) <= self.size + self.stride // 2:
            return []
        return [text[i : i + self.size] for i in range(0, len(text) - self.size // 2, self.stride)]

    def to_dict(self) -> dict[str, float]:
        return {"size": self.size, "stride": self.stride, "min_chars": self.min_chars, "discount": self.discount}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> TabooWindows | None:
        spec = meta.get("taboo_windows")
        return cls(**spec) if spec else None


@dataclass
class Calibrator:
    """Temperature scaling per output, fitted on a validation split (never the test split).

    `thresholds` (optional, per turn output) are decision thresholds chosen on the selection data
    (the validation split, plus hand-written threshold calls when given) on the temperature-scaled
    probability. They are folded into the output: a turn probability p becomes
    sigmoid(logit(p) - logit(threshold)), so p == threshold maps to 0.5 and every consumer that
    flags at 0.5 (QA rules, the call aggregator's counts, `kefu train eval`) decides at the chosen
    threshold. The order of scores is unchanged (ROC AUC is the same).
    """

    temperatures: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def fit_one(logits: np.ndarray, labels: np.ndarray) -> float:
        """The temperature that minimises the log loss of sigmoid(logit / T) (grid then refine)."""
        if len(logits) == 0 or len(set(labels.tolist())) < 2:
            return 1.0

        def nll(t: float) -> float:
            p = np.clip(sigmoid(logits / t), 1e-7, 1 - 1e-7)
            return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))

        grid = np.exp(np.linspace(math.log(0.2), math.log(20), 60))
        best = min(grid, key=nll)
        fine = np.exp(np.linspace(math.log(best / 1.15), math.log(best * 1.15), 30))
        return float(min(fine, key=nll))

    def apply(self, name: str, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64) / self.temperatures.get(name, 1.0)
        if name in self.thresholds:
            z = z - float(logit(self.thresholds[name]))
        return sigmoid(z)

    def to_dict(self) -> dict[str, float]:
        return dict(self.temperatures)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Calibrator:
        """Temperatures and decision thresholds as saved in kefu_classifier.json."""
        return cls(dict(meta.get("temperatures", {})), dict(meta.get("thresholds", {}) or {}))


def best_threshold(sets: Sequence[tuple[np.ndarray, np.ndarray]], lo: float = 0.05, hi: float = 0.95,
                   step: float = 0.01, negative_weights: Sequence[float] | None = None) -> tuple[float, float]:
    """(threshold, mean F1) maximising the mean F1 over the given (labels, probabilities) sets.

    `negative_weights` (one per set) count each negative of that set so many times: a set whose positive
    share differs from the data the model will meet is scored as if it had that data's share.
    Ties go to the threshold closest to 0.5. Sets without both classes are skipped; with none left, 0.5.
    """
    weights = list(negative_weights) if negative_weights is not None else [1.0] * len(sets)
    if len(weights) != len(sets) or any(w <= 0 for w in weights):
        raise ValueError(f"need one positive negative-weight per set, got {weights} for {len(sets)} sets")
    usable = [(np.asarray(y, dtype=int), np.asarray(p, dtype=float), w)
              for (y, p), w in zip(sets, weights, strict=True)]
    usable = [(y, p, w) for y, p, w in usable if len(y) and 0 < y.sum() < len(y)]
    if not usable:
        return 0.5, float("nan")
    best = (-1.0, 0.5)
    for t in np.round(np.arange(lo, hi + 1e-9, step), 4):
        f1s = []
        for y, p, w in usable:
            pred = p >= t
            tp = float((pred & (y == 1)).sum())
            fp = float((pred & (y == 0)).sum())
            denom = 2 * tp + w * fp + float(((~pred) & (y == 1)).sum())
            f1s.append(2 * tp / denom if denom else 0.0)
        score = float(np.mean(f1s))
        if score > best[0] + 1e-9 or (abs(score - best[0]) <= 1e-9 and abs(t - 0.5) < abs(best[1] - 0.5)):
            best = (score, float(t))
    return best[1], best[0]


BASE_FEATURES: tuple[str, ...] = (
    "risk_max",
    "risk_mean",
    "risk_last",
    "risk_last2",
    "risk_share",
    "taboo_max",
    "taboo_count",
    "empathy_max",
    "empathy_after_risk",
    "empathy_share",
    "call_risk",
    "turns_log",
    "call_text",
)
# Typed conversations (online chat, app, WeChat, Weibo) read differently from ASR transcripts of calls: the
# turn models learn mostly from speech, the whole-call text model also from Weibo dialogues. The aggregator
# gets a `written` flag and every feature again multiplied by it, i.e. its own weights per channel family
# (5-fold CV on validation calls + the STC-3 held-out train fifth: STC-3 0.895 → 0.902, generated 0.990 → 0.992).
WRITTEN_CHANNELS: frozenset[str] = frozenset(
    {"chat", "online", "app", "wechat", "weibo", "web", "email", "sms", "text"}
)
AGG_FEATURES: tuple[str, ...] = (*BASE_FEATURES, "written", *(f"written*{f}" for f in BASE_FEATURES))


def is_written(channel: object) -> bool:
    """True for a typed channel (chat, app, WeChat, Weibo…); voice, unknown and missing channels are speech."""
    return isinstance(channel, str) and channel.strip().lower() in WRITTEN_CHANNELS


def call_features(turns: Sequence[dict[str, float]], roles: Sequence[str], call_risk: float,
                  call_text: float = 0.0, written: bool = False) -> list[float]:
    """Order-aware features of one call from its turn probabilities, the call head's probability and
    the whole-call text model's score (0 for a model without one), then the same again times `written`."""
    risk = [t["risk"] for t, r in zip(turns, roles, strict=True) if r == "customer"]
    taboo = [t["taboo"] for t, r in zip(turns, roles, strict=True) if r == "agent"]
    emp = [t["empathy"] for t, r in zip(turns, roles, strict=True) if r == "agent"]
    first_risk = next((i for i, (t, r) in enumerate(zip(turns, roles, strict=True))
                       if r == "customer" and t["risk"] > 0.5), None)
    after = [t["empathy"] for i, (t, r) in enumerate(zip(turns, roles, strict=True))
             if r == "agent" and first_risk is not None and i > first_risk]
    base = [
        max(risk, default=0.0),
        float(np.mean(risk)) if risk else 0.0,
        risk[-1] if risk else 0.0,
        max(risk[-2:], default=0.0),
        float(np.mean([x > 0.5 for x in risk])) if risk else 0.0,
        max(taboo, default=0.0),
        float(sum(x > 0.5 for x in taboo)),
        max(emp, default=0.0),
        max(after, default=0.0),
        float(np.mean([x > 0.5 for x in emp])) if emp else 0.0,
        call_risk,
        math.log1p(len(turns)),
        call_text,
    ]
    w = 1.0 if written else 0.0
    return [*base, w, *(x * w for x in base)]


@dataclass
class Aggregator:
    """Call-level logistic models over call_features: complaint_risk and empathy."""

    weights: dict[str, list[float]] = field(default_factory=dict)  # name → coefficients + intercept last

    def fit(self, features: np.ndarray, targets: dict[str, np.ndarray], c: float = 1.0) -> None:
        from sklearn.linear_model import LogisticRegression

        for name, y in targets.items():
            if len(set(y.tolist())) < 2:
                prior = float(np.log((y.mean() + 1e-3) / (1 - y.mean() + 1e-3)))
                self.weights[name] = [0.0] * features.shape[1] + [prior]
                continue
            lr = LogisticRegression(C=c, max_iter=2000).fit(features, y)
            self.weights[name] = [*lr.coef_[0].tolist(), float(lr.intercept_[0])]

    def predict(self, name: str, features: np.ndarray) -> np.ndarray:
        w = np.asarray(self.weights[name])
        return sigmoid(features @ w[:-1] + w[-1])

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(AGG_FEATURES), "weights": self.weights}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Aggregator:
        saved = list(data.get("features", []))
        unknown = [f for f in saved if f not in AGG_FEATURES]
        if unknown or len(set(saved)) != len(saved):
            raise ValueError(f"aggregator features {saved} do not fit this version's {list(AGG_FEATURES)}; "
                             "retrain the model")
        # A model saved before a feature existed gives it weight 0 (call_text, the written-channel features).
        weights = {}
        for name, w in data["weights"].items():
            if len(w) != len(saved) + 1:
                raise ValueError(f"aggregator weights {name!r} have {len(w)} entries, expected {len(saved) + 1}")
            by_name = dict(zip(saved, w[:-1], strict=True))
            weights[name] = [float(by_name.get(f, 0.0)) for f in AGG_FEATURES] + [float(w[-1])]
        return cls(weights=weights)


def default_aggregator() -> Aggregator:
    """Hand-set weights used before an aggregator is fitted (e.g. a model mid-training)."""
    risk = [0.0] * len(AGG_FEATURES)
    emp = [0.0] * len(AGG_FEATURES)
    f = AGG_FEATURES.index
    risk[f("risk_last2")], risk[f("taboo_max")], risk[f("empathy_after_risk")], risk[f("call_risk")] = 3, 2, -2, 2
    emp[f("taboo_max")], emp[f("empathy_max")], emp[f("risk_max")] = -4, 3, -1
    return Aggregator({"complaint_risk": [*risk, -3.0], "empathy": [*emp, 0.5]})


class TurnModelMixin:
    """predict_turns / predict_calls on top of raw logits: calibration, role masking and aggregation.

    A backend implements `_logits(texts, roles) -> (n, 3)` and `_call_logits(contexts) -> (n,)`.
    """

    name: str
    calibrator: Calibrator
    aggregator: Aggregator
    call_text: CallTextModel | None = None
    taboo_windows: TabooWindows | None = None

    def _logits(self, texts: Sequence[str], roles: Sequence[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _call_logits(self, contexts: Sequence[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def turn_probabilities(self, texts: Sequence[str], roles: Sequence[str]) -> np.ndarray:
        """(n, 3) calibrated probabilities of taboo, empathy, risk for every turn, whatever its role."""
        roles = check_roles(texts, roles)
        if not texts:
            return np.zeros((0, len(HEADS)))
        logits = self.turn_logits([prepare(t) for t in texts], roles)
        return np.stack([self.calibrator.apply(h, logits[:, i]) for i, h in enumerate(HEADS)], axis=1)

    def turn_logits(self, texts: Sequence[str], roles: Sequence[str]) -> np.ndarray:
        """(n, 3) raw logits of prepared texts, taboo read in windows too (with_taboo_windows)."""
        return self.with_taboo_windows(texts, roles, self._logits(texts, roles))

    def with_taboo_windows(self, texts: Sequence[str], roles: Sequence[str], logits: np.ndarray) -> np.ndarray:
        """`logits` (the whole turns', updated in place) where, with TabooWindows, an agent turn's taboo logit is
        the larger of the whole turn's and its windows' lowered by the discount (on the calibrated scale, so by
        discount × T)."""
        if self.taboo_windows is None:
            return logits
        pieces: list[str] = []
        owner: list[int] = []
        for i, (text, role) in enumerate(zip(texts, roles, strict=True)):
            if role == "agent":
                for w in self.taboo_windows.of(text):
                    pieces.append(w)
                    owner.append(i)
        if pieces:
            shift = self.taboo_windows.discount * self.calibrator.temperatures.get(HEADS[0], 1.0)
            np.maximum.at(logits[:, 0], np.asarray(owner), self._logits(pieces, ["agent"] * len(pieces))[:, 0] - shift)
        return logits

    def predict_turns(self, texts: Sequence[str], roles: Sequence[str]) -> list[dict[str, float]]:
        roles = check_roles(texts, roles)
        probs = self.turn_probabilities(texts, roles)
        return [
            {name: float(probs[i, HEADS.index(name)]) for name in TURN_LABELS[role]} for i, role in enumerate(roles)
        ]

    def call_text_scores(self, calls: Sequence[Sequence[tuple[str, str]]]) -> np.ndarray:
        """The whole-call text model's score per call ((role, text) turns); zeros when the model has none."""
        if self.call_text is None:
            return np.zeros(len(calls))
        return self.call_text.score(calls)

    def predict_calls(self, transcripts: Sequence[Transcript]) -> list[CallScores]:
        texts: list[str] = []
        roles: list[str] = []
        bounds: list[tuple[int, int]] = []
        for tr in transcripts:
            start = len(texts)
            texts.extend(t.text for t in tr.turns)
            roles.extend(t.role for t in tr.turns)
            bounds.append((start, len(texts)))
        turn_scores = self.predict_turns(texts, roles)
        contexts = [call_context([(t.role, t.text) for t in tr.turns]) for tr in transcripts]
        call_risk = self.calibrator.apply(CALL_HEAD, self._call_logits(contexts)) if contexts else np.zeros(0)
        call_text = self.call_text_scores([[(t.role, t.text) for t in tr.turns] for tr in transcripts])
        out: list[CallScores] = []
        feats = [
            call_features(turn_scores[a:b], roles[a:b], float(call_risk[k]), float(call_text[k]),
                          is_written(tr.extra.get("channel")))
            for k, ((a, b), tr) in enumerate(zip(bounds, transcripts, strict=True))
        ]
        if not feats:
            return out
        x = np.asarray(feats)
        risk = self.aggregator.predict("complaint_risk", x)
        emp = self.aggregator.predict("empathy", x)
        for k, (a, b) in enumerate(bounds):
            out.append(CallScores(float(risk[k]), float(emp[k]), turn_scores[a:b]))
        return out
